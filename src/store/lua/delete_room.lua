-- KEYS: log, log:last, deadlines, room, members, participants, roomname, rooms.
-- ARGV: id, deadline entry, claim (ms). Deletes a room whose deletion this replica claimed
-- and leaves it from each participant's rooms; emits nothing. Returns {'deleted'} or
-- {'unclaimed'} (a join moved the deadline).
if not unschedule(KEYS[3], ARGV[2], ARGV[3]) then return {'unclaimed'} end
for _, user in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('SREM', key(T.user_rooms, user), ARGV[1])
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[8], ARGV[1])
return {'deleted'}
