"""The process group a layer is built for and its collectives (a single process needs none)."""
