-- KEYS: log, log:last, index (a sorted set of ids scored by time in ms).
-- ARGV: kind ('user' | 'call' | 'room'), 'asc' | 'desc', count, after time (ms) or '',
-- after id. The documents of the next `count` ids after the position (time, id) in the
-- index's order (by score, then by id byte by byte, as Redis orders members of equal
-- score); a room comes as {doc, participants}.
local index, kind, desc, count = KEYS[3], ARGV[1], ARGV[2] == 'desc', tonumber(ARGV[3])

-- Whether id `a` comes after `b` in the walk (byte order: Lua's < follows the locale).
local function past(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return (x > y) ~= desc end
  end
  return (#a > #b) ~= desc
end

local ids
if ARGV[4] == '' then
  local range = desc and 'ZREVRANGE' or 'ZRANGE'
  ids = redis.call(range, index, 0, count - 1)
else
  local at = ARGV[4]
  ids = {}
  -- Those at the position's time that come after its id, then those after that time.
  local same = desc and redis.call('ZREVRANGEBYSCORE', index, at, at) or redis.call('ZRANGEBYSCORE', index, at, at)
  for _, id in ipairs(same) do
    if #ids < count and past(id, ARGV[5]) then ids[#ids + 1] = id end
  end
  if #ids < count then
    local rest
    if desc then
      rest = redis.call('ZREVRANGEBYSCORE', index, '(' .. at, '-inf', 'LIMIT', 0, count - #ids)
    else
      rest = redis.call('ZRANGEBYSCORE', index, '(' .. at, '+inf', 'LIMIT', 0, count - #ids)
    end
    for _, id in ipairs(rest) do ids[#ids + 1] = id end
  end
end
local out = {}
for _, id in ipairs(ids) do
  local doc = redis.call('GET', key(T[kind], id))
  if doc and kind == 'room' then
    out[#out + 1] = {id, doc, redis.call('LRANGE', key(T.participants, id), 0, -1)}
  elseif doc then
    out[#out + 1] = {id, doc}
  end
end
return out
