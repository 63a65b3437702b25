-- alias.lua: builtin:alias in Lua.  At categorize, replace each recipient
-- that has an alias by its list (one level; duplicates dropped).
--
--   binding "aliases" {
--     event = "categorize"; sink = "lua:/etc/sluice/alias.lua";
--     properties { "sales@example.test" = "a@example.test, b@example.test"; }
--   }
local s = { events = { "categorize" } }

function s.create(p)
  s.map = {}
  for k, v in pairs(p) do
    if k:find("@", 1, true) then
      local list = {}
      for a in v:gmatch("[^,%s]+") do list[#list + 1] = a end
      s.map[k:lower()] = list
    end
  end
end

function s.handle(ctx)
  local want, seen = {}, {}
  for _, r in ipairs(ctx:rcpts()) do
    for _, a in ipairs(s.map[r:lower()] or { r }) do
      if not seen[a:lower()] then
        seen[a:lower()] = true
        want[#want + 1] = a
      end
    end
  end
  -- edit the list in place: set what exists, add the rest, remove the tail
  local have = #ctx:rcpts()
  for i, a in ipairs(want) do
    local ok, why
    if i <= have then ok, why = ctx:rcpt_set(i, a) else ok, why = ctx:rcpt_add(a) end
    if not ok then return "tempfail", 451, "4.3.0", "alias expansion failed: " .. why end
  end
  for i = have, #want + 1, -1 do ctx:rcpt_remove(i) end
  return "continue"
end

return s
