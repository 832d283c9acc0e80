-- KEYS: log, log:last, user, users. ARGV: id, document, score (createdAt in ms), event.
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
emit(ARGV[4])
return {'stored'}
