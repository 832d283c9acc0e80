-- ARGV: roomId, userId, event
-- Returns {'ok', user doc, room doc, participants}, {'no_room'} or {'no_user'}.
local room = p .. 'room:' .. ARGV[1]
if redis.call('EXISTS', room) == 0 then return {'no_room'} end
local user = redis.call('GET', p .. 'user:' .. ARGV[2])
if not user then return {'no_user'} end
-- The set makes the join idempotent; the list keeps the order of first joins.
if redis.call('SADD', room .. ':members', ARGV[2]) == 1 then
  redis.call('RPUSH', room .. ':participants', ARGV[2])
end
local entry = room_entry(ARGV[1])
emit(ARGV[3], entry[2])
return {'ok', user, entry[1], entry[2]}
