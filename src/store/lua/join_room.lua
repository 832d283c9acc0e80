-- KEYS: log, log:last, room, members, participants, user, user's rooms, deadlines.
-- ARGV: roomId, userId, owner ('room:<id>'), expiry (ms) or '', event.
-- Returns {'joined', user doc, room doc, participants}, {'no_room'} or {'no_user'}.
local room = redis.call('GET', KEYS[3])
if not room then return {'no_room'} end
local user = redis.call('GET', KEYS[6])
if not user then return {'no_user'} end
-- The set makes the join idempotent; the list keeps the order of first joins.
if redis.call('SADD', KEYS[4], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[5], ARGV[2])
end
-- Kept beside the user, so that erasing the user can leave the room.
redis.call('SADD', KEYS[7], ARGV[1])
-- A join is activity: the room's deletion moves (and a claim on the old one fails).
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[8], ARGV[4], ARGV[3]) end
local participants = redis.call('LRANGE', KEYS[5], 0, -1)
emit(ARGV[5], participants)
return {'joined', user, room, participants}
