-- Deletes a consumer of a group only while it owns nothing and has been idle long enough:
-- checked and deleted in one step, so a process that reads between a look at XINFO and the
-- delete (a paused pool resuming) can never have its new entries dropped from the PEL.
--
-- KEYS[1]  the stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer
-- ARGV[3]  the least idle time, ms
-- Reply: -1 when it was kept (owns entries, not idle long enough, or gone); else XGROUP
--        DELCONSUMER's reply: how many pending entries it dropped (0 here, by the check).
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if name == ARGV[2] then
    if pending == 0 and idle >= tonumber(ARGV[3]) then
      return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    end
    return -1
  end
end
return -1
