-- Moves the due members of a scheduled set to the stream, soonest first: each member is
-- added to the stream with `scheduled_for` = its due time (or, when it is no event, to the
-- DLQ) and removed from the set in this one script, so the stream gets it exactly once
-- however many processes run the mover, also across a kill -9 (a script runs whole or not
-- at all). Due by Redis's clock (TIME), not any host's.
--
-- A member is an event when it is a JSON object whose values are all strings, with `type`;
-- anything else is dead-lettered `malformed` with its raw text in `scheduled_member`: never
-- stuck at the head of the set, never lost. A failing XADD (the stream key holds something
-- else) raises before that member's ZREM: it stays, and the members before it moved.
--
-- KEYS[1]  the scheduled set
-- KEYS[2]  the stream
-- KEYS[3]  the DLQ
-- ARGV[1]  the most members to move
-- ARGV[2]  `dlq_group` of a malformed member (the first pool)
-- ARGV[3]  the most fields a member may have (Lua's unpack limit)
-- ARGV[4]  the most bytes of `dlq_error`
-- Reply: {moved, dead-lettered, the next due time in unix ms or -1, Redis's now in unix ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[1]))
local max_fields = tonumber(ARGV[3])

-- The XADD arguments of a member: type, data, the other fields by name, scheduled_for;
-- or nil and why it is no event.
local function fields_of(member, at)
  local ok, event = pcall(cjson.decode, member)
  if not ok then return nil, 'not JSON: ' .. tostring(event) end
  if type(event) ~= 'table' then return nil, 'not a JSON object' end
  local names = {}
  for k, v in pairs(event) do
    if type(k) ~= 'string' then return nil, 'a JSON array, not an object' end
    if type(v) ~= 'string' then
      return nil, 'field `' .. k .. '` is not a string (every value must be a JSON string)'
    end
    if k ~= 'type' and k ~= 'data' and k ~= 'scheduled_for' then names[#names + 1] = k end
  end
  if event.type == nil then return nil, 'no `type` field' end
  if #names + 3 > max_fields then return nil, 'more than ' .. max_fields .. ' fields' end
  table.sort(names)
  local args = {'type', event.type}
  if event.data ~= nil then
    args[#args + 1] = 'data'
    args[#args + 1] = event.data
  end
  for _, k in ipairs(names) do
    args[#args + 1] = k
    args[#args + 1] = event[k]
  end
  args[#args + 1] = 'scheduled_for'
  args[#args + 1] = at
  return args
end

local moved, dead = 0, 0
for i = 1, #due, 2 do
  local member = due[i]
  local score = tonumber(due[i + 1])
  -- A score set by hand may be -inf: due, and shown as 0.
  if score ~= score or score == -math.huge then score = 0 end
  local at = string.format('%d', math.floor(score))
  local args, why = fields_of(member, at)
  if args then
    redis.call('XADD', KEYS[2], '*', unpack(args))
    moved = moved + 1
  else
    local reason = 'scheduled member is no event: ' .. why
    redis.call('XADD', KEYS[3], '*', 'scheduled_member', member, 'scheduled_for', at,
      'dlq_source_id', KEYS[1], 'dlq_group', ARGV[2], 'dlq_reason', 'malformed',
      'dlq_error', string.sub(reason, 1, tonumber(ARGV[4])), 'dlq_attempts', '0',
      'dlq_failed_at', string.format('%d', now))
    dead = dead + 1
  end
  redis.call('ZREM', KEYS[1], member)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_at = -1
if next_due[2] then next_at = math.max(math.floor(tonumber(next_due[2])), 0) end
return {moved, dead, next_at, now}
