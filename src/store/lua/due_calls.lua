-- ARGV: now (ms), limit. Returns {id, deadline, id, deadline, ...}, earliest first.
return redis.call('ZRANGEBYSCORE', p .. 'deadlines', '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
