-- The example of docs/lua-sinks.md: refuse senders of one domain at MAIL,
-- wait 5 ms at end of data (the worker serves others meanwhile), then tag
-- the message.
local s = {}
s.events = { "mail", "eod" }
function s.create(props) s.domain = props.domain or "spam.example" end
function s.handle(ctx)
  if ctx.event == "mail" and ctx.sender:lower():match("@" .. s.domain:gsub("%.", "%%.") .. "$") then
    return "reject", 550, "5.7.1", "we take no mail from there"
  end
  if ctx.event == "eod" then
    sluice.sleep(0.005)                      -- yields; the worker serves others meanwhile
    ctx:header_add("X-Lua-Checked", "yes")
  end
  return "continue"
end
return s
