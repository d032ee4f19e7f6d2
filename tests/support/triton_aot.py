"""`python -m tests.support.triton_aot DTYPE...`: compile the Triton attention kernels
(layers/triton_attention.py) ahead of time for sm_90, at the sizes a 128-wide-head GQA model
launches, with no GPU (Triton's bundled ptxas), and print each one's shared memory. Run in a
process of its own: under TRITON_INTERPRET=1 (the kernel tests) Triton's own library functions are
interpreted and cannot be compiled."""
from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from radix_runtime.layers import triton_attention as ta

POINTERS = {"Table": "*i64", "Lens": "*i64", "Slots": "*i64", "Meta": "*i64", "Mid_O": "*fp32",
            "Mid_Lse": "*fp32", "sm_scale_log2": "fp32"}


def launches(dtype: str):
    small = dtype == "fp32"  # the block sizes extend_attention picks
    flags = dict(PRECISION="ieee" if small else "tf32", UPCAST=False, HAS_WINDOW=True)
    return [
        (ta._decode_stage1, dict(GROUP=4, HEAD_DIM=128, NUM_SPLITS=8, BLOCK_H=16, BLOCK_N=32,
                                 BLOCK_D=128, **flags), dict(num_warps=4, num_stages=2)),
        (ta._decode_stage2, dict(HEAD_DIM=128, NUM_SPLITS=8, BLOCK_D=128), {}),
        (ta._extend_kernel, dict(GROUP=4, HEAD_DIM=128, BLOCK_M=32 if small else 64,
                                 BLOCK_N=32 if small else 64, BLOCK_D=128, **flags),
         dict(num_warps=8, num_stages=2)),
    ]


def compile_all(dtype: str, target=GPUTarget("cuda", 90, 32)) -> dict[str, int]:
    """kernel name -> shared memory bytes."""
    shared = {}
    for fn, consts, opts in launches(dtype):
        sig = {a: "constexpr" if a in consts else POINTERS.get(a, f"*{dtype}" if a[0].isupper() else "i32")
               for a in fn.arg_names}
        shared[fn.__name__] = triton.compile(ASTSource(fn, sig, consts), target=target, options=opts).metadata.shared
    return shared


if __name__ == "__main__":
    for dt in sys.argv[1:]:
        for name, nbytes in compile_all(dt).items():
            print(dt, name, nbytes)
