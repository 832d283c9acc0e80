-- KEYS: log, log:last, user, the user's devices, addresses, device, then (when the address
-- was another device's) that device and its user's devices.
-- ARGV: device id, address field, document, updatedAt (ms), max devices, the id the address
-- was read as ('' for none). Stores the device while its address is still what was read
-- (a registration of the same address in between: {'raced'}); a device of another user
-- there is removed (moved). Beyond max devices the least recently updated go.
-- Returns {'stored', the evicted devices' address fields...} or {'no_user'} / {'raced'} having written nothing.
if redis.call('EXISTS', KEYS[3]) == 0 then return {'no_user'} end
if (redis.call('HGET', KEYS[5], ARGV[2]) or '') ~= ARGV[6] then return {'raced'} end
if ARGV[6] ~= '' and ARGV[6] ~= ARGV[1] then
  redis.call('DEL', KEYS[7])
  redis.call('ZREM', KEYS[8], ARGV[6])
end
redis.call('HSET', KEYS[5], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[6], 'doc', ARGV[3], 'address', ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
local out = {'stored'}
while redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[5]) do
  local oldest = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  local stored = key(T.device, oldest)
  local address = redis.call('HGET', stored, 'address')
  if address then redis.call('HDEL', KEYS[5], address) end
  redis.call('DEL', stored)
  redis.call('ZREM', KEYS[4], oldest)
  out[#out + 1] = address or ''
end
return out
