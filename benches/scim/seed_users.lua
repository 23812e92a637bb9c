-- wrk script: POST /Users with unique userNames (used to seed the reference
-- server, which has no bulk load). Usage: wrk -t2 -c8 -d300s -s seed_users.lua URL
local counter = 0
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/scim+json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SCIM_TOKEN")
end
function request()
  counter = counter + 1
  local name = string.format("seed-%d-%d@bench.example", tid, counter)
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name ..
    '","active":true,"name":{"givenName":"Bench","familyName":"User"},' ..
    '"emails":[{"value":"' .. name .. '","type":"work","primary":true}]}'
  return wrk.format(nil, (os.getenv("SCIM_BASE") or "/scim/v2") .. "/Users", nil, body)
end
