-- ARGV: id, roomName, document, score (createdAt in ms), event
redis.call('SET', p .. 'room:' .. ARGV[1], ARGV[3])
redis.call('ZADD', p .. 'rooms', ARGV[4], ARGV[1])
redis.call('SET', p .. 'roomname:' .. ARGV[2], 'room:' .. ARGV[1])
emit(ARGV[5])
return 1
