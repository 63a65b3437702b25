-- access.lua: builtin:access in Lua.  Refuse (or defer, or accept at once)
-- senders or recipients whose address matches a Lua pattern.
--
--   binding "no-spam" {
--     event = "mail"; sink = "lua:/etc/sluice/access.lua"; priority = 1000;
--     properties { match = "@spam%.example$"; action = "reject"; text = "sender refused"; }
--   }
local s = { events = { "mail", "rcpt" } }
local replies = {
  reject   = { 550, "5.7.1", "Access denied" },
  tempfail = { 450, "4.7.1", "Try again later" },
}

function s.create(p)
  s.match = assert(p.match, "property match: a Lua pattern is required")
  s.action = p.action or "reject"
  assert(s.action == "reject" or s.action == "tempfail" or s.action == "accept",
         "property action: reject, tempfail or accept")
  s.text = p.text
end

function s.handle(ctx)
  local addr = ctx.event == "mail" and ctx.sender or ctx.rcpt
  if not addr or not addr:lower():find(s.match) then return "continue" end
  if s.action == "accept" then return "consumed" end -- the rest of the chain is skipped
  local r = replies[s.action]
  return s.action, r[1], r[2], s.text or r[3]
end

return s
