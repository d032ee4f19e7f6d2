-- Argo CD health check for sglangfleet.dev SGLangDeployment (docs/gitops.md installs it as
-- resource.customizations.health.sglangfleet.dev_SGLangDeployment in argocd-cm).
--
-- It reads what the operator writes: status.observedGeneration and the conditions Ready,
-- Progressing, Degraded and (with spec.router) RouterReady.
--   Degraded     the operator reports a problem (Degraded=True): an invalid spec, LeaderWorkerSet
--                missing, an object it may not touch, ...; the message says what to do
--   Suspended    Ready=False with reason ScaledToZero (0 groups wanted)
--   Healthy      Ready=True (every wanted group Ready), Progressing not True (no rollout or
--                scaling under way) and, with a router, RouterReady=True
--   Progressing  anything else: the operator has not seen this generation yet, groups loading
--                weights, a rolling update or a scaling step, the router waiting for workers
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}

local function find(conditions, t)
  for _, c in ipairs(conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local function say(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local st = obj.status
if st == nil or st.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = find(st.conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = say(degraded)
  return hs
end

local ready = find(st.conditions, "Ready")
if ready == nil then
  return hs
end
if ready.status == "True" then
  local progressing = find(st.conditions, "Progressing")
  if progressing ~= nil and progressing.status == "True" then
    hs.message = say(progressing)
    return hs
  end
  local router = find(st.conditions, "RouterReady")
  if router ~= nil and router.status ~= "True" then
    hs.message = "Router: " .. say(router)
    return hs
  end
  hs.status = "Healthy"
  hs.message = say(ready)
  return hs
end
if ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
end
hs.message = say(ready)
return hs
