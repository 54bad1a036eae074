-- Moves one DLQ entry back to the main stream: the original fields without `dlq_*` (and
-- without old replay markers), plus `replay_of` = `dlq_source_id` and `replay_group` =
-- `dlq_group`; then deletes it from the DLQ.
--
-- KEYS[1]  the DLQ stream
-- KEYS[2]  the main stream
-- ARGV[1]  the DLQ entry's ID
-- Reply: the new entry's ID in the main stream, or nil if the DLQ entry is gone.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f, out, src, grp = e[1][2], {}, nil, nil
for i = 1, #f, 2 do
  local k, v = f[i], f[i + 1]
  if k == 'dlq_source_id' then src = v
  elseif k == 'dlq_group' then grp = v
  elseif string.sub(k, 1, 4) ~= 'dlq_' and k ~= 'replay_of' and k ~= 'replay_group' and k ~= 'replay_job' then
    out[#out + 1] = k; out[#out + 1] = v
  end
end
if src then out[#out + 1] = 'replay_of'; out[#out + 1] = src end
if grp then out[#out + 1] = 'replay_group'; out[#out + 1] = grp end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
