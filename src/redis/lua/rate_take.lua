-- Takes up to ARGV[4] tokens from a pool's (or a key's) rate bucket: a token bucket refilled
-- continuously at limit/per by Redis's own clock (TIME), so every process shares one clock
-- and one budget. A bucket that is absent is full; it expires once it would be full again.
--
-- KEYS[1]  the bucket hash, <stream>:rate:<pool> or <stream>:rate:<pool>:<key>
-- ARGV[1]  limit: tokens per period
-- ARGV[2]  the period, ms
-- ARGV[3]  capacity: the most tokens the bucket holds (the largest burst)
-- ARGV[4]  tokens wanted (at least 1)
-- Reply: {taken, wait_ms}: tokens taken (0..wanted) and, when fewer than wanted, the ms
-- until the next token (else 0).
local limit = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate = limit / per
local tokens = cap
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if state[1] and state[2] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(cap, tonumber(state[1]) + elapsed * rate)
end
local taken = math.min(want, math.floor(tokens))
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate) + 1000)
local wait = 0
if taken < want then
  wait = math.max(1, math.ceil((1 - tokens) / rate))
end
return {taken, wait}
