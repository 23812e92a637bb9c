-- wrk script: PATCH /Groups/<SCIM_GROUP>, alternately adding and removing
-- member <SCIM_MEMBER> (the way Entra and Okta push membership changes).
local n = 0
function init(args)
  wrk.method = "PATCH"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SCIM_TOKEN")
  wrk.headers["Content-Type"] = "application/scim+json"
  wrk.path = (os.getenv("SCIM_BASE") or "/scim/v2") .. "/Groups/" .. os.getenv("SCIM_GROUP")
end
function request()
  n = n + 1
  local member = os.getenv("SCIM_MEMBER")
  local op
  if n % 2 == 1 then
    op = '{"op":"add","path":"members","value":[{"value":"' .. member .. '"}]}'
  else
    op = '{"op":"remove","path":"members[value eq \\"' .. member .. '\\"]"}'
  end
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[' .. op .. ']}'
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
