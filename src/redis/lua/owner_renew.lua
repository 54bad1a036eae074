-- Renews (or releases) the ownership lease, only if it is still ours at our epoch: a process
-- that slept past the expiry must never extend or delete a successor's lease.
--
-- KEYS[1]  the owner hash
-- ARGV[1]  our consumer
-- ARGV[2]  our epoch
-- ARGV[3]  lease time, ms; 0 releases (deletes) the lease
-- Reply: 1 when it was ours (renewed or released), 0 when it is not.
if redis.call('HGET', KEYS[1], 'consumer') ~= ARGV[1]
  or redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
