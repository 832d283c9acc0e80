-- ARGV: id, document, score (createdAt in ms), event
redis.call('SET', p .. 'user:' .. ARGV[1], ARGV[2])
redis.call('ZADD', p .. 'users', ARGV[3], ARGV[1])
emit(ARGV[4])
return 1
