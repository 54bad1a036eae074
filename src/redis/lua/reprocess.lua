-- Moves one DLQ entry back to the main stream: the original fields without `dlq_*` (and
-- without old replay markers), plus `replay_of` = `dlq_source_id` and `replay_group` =
-- `dlq_group`; then deletes it from the DLQ. An `unrouted` or `malformed` letter gets no
-- `replay_group`: its `dlq_group` is only the first pool, which dead-lettered it for all, so
-- it is routed again by type (fixing the routing and reprocessing works).
--
-- A letter that cannot be copied stays in the DLQ and the reply is an error naming why, so
-- the caller skips it and goes on: one with no original fields (nothing to re-publish), or
-- one wider than one XADD here can take (Lua's unpack stops near 8,000 values).
--
-- KEYS[1]  the DLQ stream
-- KEYS[2]  the main stream
-- ARGV[1]  the DLQ entry's ID
-- ARGV[2]  the most field names and values one XADD may take here
-- Reply: the new entry's ID in the main stream, nil if the DLQ entry is gone, or an error.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f, out, src, grp, reason = e[1][2], {}, nil, nil, nil
for i = 1, #f, 2 do
  local k, v = f[i], f[i + 1]
  if k == 'dlq_source_id' then src = v
  elseif k == 'dlq_group' then grp = v
  elseif k == 'dlq_reason' then reason = v
  elseif string.sub(k, 1, 4) ~= 'dlq_' and k ~= 'replay_of' and k ~= 'replay_group' and k ~= 'replay_job' then
    out[#out + 1] = k; out[#out + 1] = v
  end
end
if #out == 0 then
  return redis.error_reply('ERR nothing to copy: the letter has no fields besides dlq_* and replay markers; forget it, or XADD what it should carry by hand')
end
local limit = tonumber(ARGV[2])
if #out + 4 > limit then
  return redis.error_reply('ERR too wide to copy in one script: ' .. (#out / 2) .. ' fields, at most ' .. math.floor((limit - 4) / 2) .. '; XADD its fields by hand, then forget it')
end
if src then out[#out + 1] = 'replay_of'; out[#out + 1] = src end
if grp and reason ~= 'unrouted' and reason ~= 'malformed' then
  out[#out + 1] = 'replay_group'; out[#out + 1] = grp
end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
