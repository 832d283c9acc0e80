-- ARGV: prefix, id, roomName, document, score (createdAt in ms)
redis.call('SET', p .. 'room:' .. ARGV[2], ARGV[4])
redis.call('ZADD', p .. 'rooms', ARGV[5], ARGV[2])
redis.call('SET', p .. 'roomname:' .. ARGV[3], 'room:' .. ARGV[2])
return 1
