-- KEYS: log, log:last, deadlines, parked. ARGV: entry, claim (ms), '1' to park.
-- Takes a claimed deadline off the schedule, or moves it aside (parked, scored by when)
-- when its entry or document could not be read. Returns {'done'} or {'unclaimed'}.
if not unschedule(KEYS[3], ARGV[1], ARGV[2]) then return {'unclaimed'} end
if ARGV[3] == '1' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
return {'done'}
