-- Takes the ownership lease of an ordered pool's stream (or partition) unless another
-- consumer holds it. Each take bumps the epoch (a fencing token), kept in a counter key that
-- does not expire, so it grows across expiries and releases.
--
-- KEYS[1]  the owner hash, <stream>:owner:<pool> (consumer, epoch, since)
-- KEYS[2]  the epoch counter, <stream>:owner:<pool>:epoch
-- ARGV[1]  the consumer taking it
-- ARGV[2]  lease time, ms
-- ARGV[3]  now, unix ms (the `since` field)
-- Reply: {1, epoch, fresh} when taken (fresh = 1 when the counter did not exist: first start,
--        or Redis lost its data); {0, holder, epoch} when another consumer holds it.
local holder = redis.call('HGET', KEYS[1], 'consumer')
if holder and holder ~= '' and holder ~= ARGV[1] then
  return {0, holder, redis.call('HGET', KEYS[1], 'epoch') or '0'}
end
local fresh = 1 - redis.call('EXISTS', KEYS[2])
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'consumer', ARGV[1], 'epoch', epoch, 'since', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, tostring(epoch), fresh}
