-- Publishes ticks of a recurring schedule and records the last one as `last_tick`, in one
-- step: the claim and the events happen together or not at all (a kill -9 of the caller
-- cannot come between them), and only a caller that read the current `last_tick` does it,
-- so each tick reaches the stream once however many processes run. Each event's id is also
-- remembered under its dedup key, as `weir publish --id` does: an event already published
-- under that id is not written again (a retry after a failed XADD, or a hand publish).
--
-- KEYS[1]   the schedule hash, <stream>:schedule:<name>
-- KEYS[2]   the stream the events go to
-- KEYS[3…]  the dedup key of each tick's event id, in ARGV's tick order
-- ARGV[1]   the `last_tick` the caller read ('' for none)
-- ARGV[2]   how long a dedup key lives, ms
-- ARGV[3]   the events' type
-- ARGV[4]   the events' data
-- ARGV[5]   the schedule's name
-- ARGV[6…10] the field names: type, data, id, schedule, scheduled_for
-- ARGV[11…] per tick: the tick (unix ms), then its event id
-- Reply: {'fired', added} | {'paused'} | {'moved', last_tick}
local h = KEYS[1]
if redis.call('HGET', h, 'paused') == '1' then return {'paused'} end
local last = redis.call('HGET', h, 'last_tick') or ''
if last ~= ARGV[1] then return {'moved', last} end
local added = 0
for i = 1, (#ARGV - 10) / 2 do
  local tick, id = ARGV[9 + 2 * i], ARGV[10 + 2 * i]
  if not redis.call('GET', KEYS[2 + i]) then
    local entry = redis.call('XADD', KEYS[2], '*', ARGV[6], ARGV[3], ARGV[7], ARGV[4],
      ARGV[8], id, ARGV[9], ARGV[5], ARGV[10], tick)
    redis.call('SET', KEYS[2 + i], entry, 'PX', ARGV[2])
    added = added + 1
  end
  last = tick
end
redis.call('HSET', h, 'last_tick', last)
return {'fired', added}
