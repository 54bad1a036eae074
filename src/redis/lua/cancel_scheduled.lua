-- Cancels delayed events by id: one ZSCAN page of the scheduled set, removing every member
-- whose `id` is one of the ids. For an id found, its dedup key is deleted too when it still
-- holds the scheduled marker (`scheduled:<due>`), so the id may be scheduled again; a key
-- that holds an entry ID (the id was also published) stays.
--
-- KEYS[1]  the scheduled set
-- KEYS[2…] the dedup key of each id, in the order of the ids
-- ARGV[1]  the ZSCAN cursor (0 to start)
-- ARGV[2]  ZSCAN's COUNT
-- ARGV[3]  `1`: decode every member; `0`: only members holding an id's text verbatim (ids
--          that JSON writes unescaped)
-- ARGV[4…] the ids
-- Reply: {the next cursor (0 at the end), the id of each member removed…}
local page = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = i - 2 end
local decode_all = ARGV[3] == '1'
local reply = {page[1]}
local members = page[2]
for i = 1, #members, 2 do
  local member = members[i]
  local candidate = decode_all
  if not candidate then
    for i2 = 4, #ARGV do
      if string.find(member, ARGV[i2], 1, true) then
        candidate = true
        break
      end
    end
  end
  if candidate then
    local ok, event = pcall(cjson.decode, member)
    if ok and type(event) == 'table' and type(event.id) == 'string' and wanted[event.id] then
      if redis.call('ZREM', KEYS[1], member) == 1 then
        reply[#reply + 1] = event.id
        local dedup = KEYS[wanted[event.id]]
        local held = redis.call('GET', dedup)
        if held and string.sub(held, 1, 10) == 'scheduled:' then redis.call('DEL', dedup) end
      end
    end
  end
end
return reply
