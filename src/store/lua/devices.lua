-- KEYS: log, log:last, user, the user's devices. The documents of the user's devices, or
-- {'no_user'}: {'devices', doc...}.
if redis.call('EXISTS', KEYS[3]) == 0 then return {'no_user'} end
local out = {'devices'}
for _, device in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local doc = redis.call('HGET', key(T.device, device), 'doc')
  if doc then out[#out + 1] = doc end
end
return out
