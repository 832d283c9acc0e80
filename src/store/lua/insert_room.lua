-- KEYS: log, log:last, room, rooms, roomname, deadlines.
-- ARGV: id, document, score (createdAt in ms), owner ('room:<id>'), expiry (ms) or '', event.
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('SET', KEYS[5], ARGV[4])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[6], ARGV[5], ARGV[4]) end
emit(ARGV[6])
return {'stored'}
