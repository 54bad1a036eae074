-- The second half of the dead-letter move for entries too wide for one script (Lua's unpack
-- stops near 8,000 values): queued in MULTI/EXEC right after the XADD of the copy, it
-- acknowledges the entry only when that XADD took effect. Redis runs every command of a
-- transaction even when one fails at run time (say the DLQ key holds a string): without this
-- check the XACK would run and the entry would be gone from the PEL without its copy.
-- Nothing runs between the two inside EXEC, so the copy, if made, is the DLQ's last entry.
--
-- KEYS[1]  the DLQ stream
-- KEYS[2]  the main stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry's ID in the main stream
-- Reply: 1 when acknowledged; 0 when the copy is not there (the entry stays pending).
if redis.call('TYPE', KEYS[1]).ok ~= 'stream' then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if not last then
  return 0
end
local fields, source, group = last[2], nil, nil
for i = 1, #fields, 2 do
  if fields[i] == 'dlq_source_id' then source = fields[i + 1]
  elseif fields[i] == 'dlq_group' then group = fields[i + 1] end
end
if source ~= ARGV[2] or group ~= ARGV[1] then
  return 0
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return 1
