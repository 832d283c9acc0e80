-- KEYS: log, log:last, user, the user's devices, addresses, device. ARGV: device id.
-- Returns {'deleted', its address field}, {'no_user'} or {'no_device'} (not a device of
-- this user).
if redis.call('EXISTS', KEYS[3]) == 0 then return {'no_user'} end
if not redis.call('ZSCORE', KEYS[4], ARGV[1]) then return {'no_device'} end
local address = redis.call('HGET', KEYS[6], 'address')
if address then redis.call('HDEL', KEYS[5], address) end
redis.call('DEL', KEYS[6])
redis.call('ZREM', KEYS[4], ARGV[1])
return {'deleted', address or ''}
