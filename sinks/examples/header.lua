-- header.lua: builtin:header in Lua.  Add a header field at end of data,
-- or change it when the message has one already (replace = "true").
--
--   binding "scanned" {
--     event = "eod"; sink = "lua:/etc/sluice/header.lua";
--     properties { name = "X-Scanned"; value = "yes"; }
--   }
local s = { events = { "eod" } }

function s.create(p)
  s.name = assert(p.name, "property name is required")
  s.value = assert(p.value, "property value is required")
  s.replace = p.replace == "true"
end

function s.handle(ctx)
  if s.replace and ctx:header_get(s.name) then
    assert(ctx:header_change(s.name, s.value))
  else
    assert(ctx:header_add(s.name, s.value))
  end
  return "continue"
end

return s
