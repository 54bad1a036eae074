-- Dead-letters the given pending entries that are idle long enough and used up their
-- delivery attempts: each is copied to the DLQ without its old `dlq_*` fields, with
-- `dlq_source_id`, `dlq_group`, `dlq_reason` = max_attempts, `dlq_error`, `dlq_attempts` and
-- `dlq_failed_at` appended, then acknowledged. Re-checks each ID with XPENDING, so an entry
-- another consumer claimed or acknowledged since the scan is left alone. An entry deleted
-- from the stream is acknowledged and reported as lost; one with more fields than the limit
-- is left alone (the caller moves it another way).
--
-- KEYS[1]  the main stream
-- KEYS[2]  the DLQ stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the minimum idle time, ms
-- ARGV[3]  the delivery count from which an entry is used up
-- ARGV[4]  now, unix ms (`dlq_failed_at`)
-- ARGV[5]  the `dlq_error` text; `{n}` stands for the delivery count
-- ARGV[6]  the most field names plus values an entry may have to be moved here
-- ARGV[7…] the IDs to consider
-- Reply: {moved, lost}; moved = {{id, type, dlq_id, delivery_count}, …}, lost = {id, …}.
local group, idle, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local before, after = string.match(ARGV[5], '^(.-){n}(.*)$')
local moved, lost = {}, {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, id, id, 1)
  if #p == 1 and p[1][4] >= max then
    local count = p[1][4]
    local n = tostring(count)
    local e = redis.call('XRANGE', KEYS[1], id, id)
    if #e == 0 then
      redis.call('XACK', KEYS[1], group, id)
      lost[#lost + 1] = id
    elseif #e[1][2] <= tonumber(ARGV[6]) then
      local f, out, k, ty = e[1][2], {}, 0, ''
      for j = 1, #f, 2 do
        local name = f[j]
        if string.byte(name, 1) ~= 100 or string.sub(name, 1, 4) ~= 'dlq_' then
          out[k + 1], out[k + 2], k = name, f[j + 1], k + 2
        end
        if name == 'type' then ty = f[j + 1] end
      end
      out[k + 1], out[k + 2] = 'dlq_source_id', id
      out[k + 3], out[k + 4] = 'dlq_group', group
      out[k + 5], out[k + 6] = 'dlq_reason', 'max_attempts'
      out[k + 7], out[k + 8] = 'dlq_error', before and (before .. n .. after) or ARGV[5]
      out[k + 9], out[k + 10] = 'dlq_attempts', n
      out[k + 11], out[k + 12] = 'dlq_failed_at', ARGV[4]
      local dlq_id = redis.call('XADD', KEYS[2], '*', unpack(out))
      redis.call('XACK', KEYS[1], group, id)
      moved[#moved + 1] = {id, ty, dlq_id, count}
    end
  end
end
return {moved, lost}
