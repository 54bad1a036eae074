-- Moves one entry to the dead-letter stream: XADD the copy, then XACK the original. A
-- failing XADD (say the DLQ key holds a string) raises before the XACK, so an entry is
-- never acknowledged without its DLQ copy. (MULTI/EXEC would not do: Redis does not roll
-- back, and the XACK would still run.)
--
-- KEYS[1]  the DLQ stream
-- KEYS[2]  the main stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry's ID in the main stream
-- ARGV[3…] the DLQ entry's fields and values, alternating
-- Reply: the DLQ entry's ID.
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return id
