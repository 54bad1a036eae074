-- Appends many entries to one stream, in order. Every entry starts with the same two field
-- names (weir's `type` and `data`), sent once; the reply is a count, not the IDs. Both save
-- Redis work per entry: about 0.9 µs instead of 1.3 (add_batch.lua).
--
-- KEYS[1]  the stream
-- ARGV[1], ARGV[2]  the names of every entry's first two fields
-- ARGV[3]  "0": each entry is just its two values (ARGV[4], ARGV[5], then the next entry);
--          "1": each entry is its two values, the number c of further names plus values,
--          then those c values
-- Reply: the number of entries added.
--
-- A failing XADD stops the script. With '*' IDs only the first can fail (OOM is checked
-- before a script's first write only; a wrong key type fails at once), so a batch is
-- written whole or not at all.
local key, a, b, n, added = KEYS[1], ARGV[1], ARGV[2], #ARGV, 0
if ARGV[3] == '0' then
  for i = 4, n, 2 do
    redis.call('XADD', key, '*', a, ARGV[i], b, ARGV[i + 1])
    added = added + 1
  end
  return added
end
local i = 4
while i <= n do
  local c = tonumber(ARGV[i + 2])
  if c == 0 then
    redis.call('XADD', key, '*', a, ARGV[i], b, ARGV[i + 1])
  else
    redis.call('XADD', key, '*', a, ARGV[i], b, ARGV[i + 1], unpack(ARGV, i + 3, i + 2 + c))
  end
  added = added + 1
  i = i + 3 + c
end
return added
