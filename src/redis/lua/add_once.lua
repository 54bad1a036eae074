-- Appends an entry unless its dedup key exists; then remembers the new ID under the dedup key.
-- A failing XADD raises before the SET, so it never reserves the key.
--
-- KEYS[1]  the stream
-- KEYS[2]  the dedup key
-- ARGV[1]  how long the dedup key lives, ms
-- ARGV[2…] the entry's fields and values, alternating
-- Reply: {id, 1} when added now; {earlier id, 0} when the dedup key already existed.
local seen = redis.call('GET', KEYS[2])
if seen then return {seen, 0} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {id, 1}
