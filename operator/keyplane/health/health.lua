-- Argo CD health check for the keyplane.dev/v1alpha1 kinds (IdentityProvider, SSODomain, ScimConnection).
-- Install as resource.customizations.health.keyplane.dev_<Kind> in argocd-cm, the same script for each kind
-- (see docs/gitops.md).
-- Follows kstatus: observedGeneration behind metadata.generation (top-level or on the Ready
-- condition) -> Progressing; Reconciling=True -> Progressing; Stalled=True -> Degraded;
-- Ready=True -> Healthy; Ready=False with a permanent reason -> Degraded; anything else -> Progressing.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

-- Reasons that need a change of the object (or of another object) by a person: never transient.
local permanent = {
  InvalidSpec = true,
  UnknownRole = true,
  DomainClaimed = true,
  InvalidDomain = true,
  CertificateExpired = true,
}

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Keyplane operator to reconcile this " .. (obj.kind or "object")
  return hs
end

local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Keyplane operator to observe the latest generation"
  return hs
end

local conditions = obj.status.conditions
local ready = find(conditions, "Ready")
local reconciling = find(conditions, "Reconciling")
local stalled = find(conditions, "Stalled")

if ready ~= nil and ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Keyplane operator to observe the latest generation"
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text(reconciling, "Reconciling")
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason ~= nil and permanent[ready.reason] then
  hs.status = "Degraded"
  hs.message = text(ready, "Not ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
