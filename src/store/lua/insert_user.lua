-- ARGV: prefix, id, document, score (createdAt in ms)
redis.call('SET', p .. 'user:' .. ARGV[2], ARGV[3])
redis.call('ZADD', p .. 'users', ARGV[4], ARGV[2])
return 1
