-- KEYS: log, log:last, user, users, user's rooms, history, then the user's call indexes
-- (all, then one per status: initiated, accepted, ended), the user's devices, the devices'
-- addresses.
-- ARGV: id, event. Erases the user in one step: document, history, call indexes, list
-- entry, room memberships and devices, and emits `user.deleted`. Returns {'erased'}, {'no_user'}, or
-- {'busy', call ids...} without erasing anything while a call of the user has not ended.
if redis.call('EXISTS', KEYS[3]) == 0 then return {'no_user'} end
local live = redis.call('ZRANGE', KEYS[8], 0, -1)
for _, id in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do live[#live + 1] = id end
if #live > 0 then return {'busy', unpack(live)} end
for _, room in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('SREM', key(T.members, room), ARGV[1])
  redis.call('LREM', key(T.participants, room), 0, ARGV[1])
end
for _, device in ipairs(redis.call('ZRANGE', KEYS[11], 0, -1)) do
  local stored = key(T.device, device)
  local address = redis.call('HGET', stored, 'address')
  if address then redis.call('HDEL', KEYS[12], address) end
  redis.call('DEL', stored)
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
emit(ARGV[2])
return {'erased'}
