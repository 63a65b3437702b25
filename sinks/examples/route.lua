-- route.lua: builtin:route in Lua.  Choose a recipient's next hop by its
-- domain: an exact key, then ".suffix", then "*".
--
--   binding "routes" {
--     event = "route"; sink = "lua:/etc/sluice/route.lua";
--     properties { "partner.example" = "smtp:192.0.2.7:2525"; "*" = "mx"; }
--   }
local s = { events = { "route" } }

function s.create(p) s.routes = p end

local function lookup(domain)
  if s.routes[domain] then return s.routes[domain] end
  local best, blen = nil, 0
  for k, v in pairs(s.routes) do
    if k:sub(1, 1) == "." and #k > blen and domain:sub(-#k) == k then best, blen = v, #k end
  end
  return best or s.routes["*"]
end

function s.handle(ctx)
  local domain = (ctx.rcpt or ""):match("@([^@]*)$") or ""
  local hop = lookup(domain:lower())
  if hop and not ctx:route_set(hop) then
    return "tempfail", 451, "4.3.5", "bad next hop for " .. domain
  end
  return "continue"
end

return s
