-- ARGV: prefix, index key, limit, 'asc' | 'desc', kind ('user' | 'call' | 'room')
-- Returns documents in index order; a room is {doc, participants}.
local last = tonumber(ARGV[3]) - 1
local ids
if ARGV[4] == 'desc' then
  ids = redis.call('ZREVRANGE', p .. ARGV[2], 0, last)
else
  ids = redis.call('ZRANGE', p .. ARGV[2], 0, last)
end
local out = {}
for i, id in ipairs(ids) do
  if ARGV[5] == 'room' then
    out[i] = room_entry(id) or false
  else
    out[i] = redis.call('GET', p .. ARGV[5] .. ':' .. id)
  end
end
return out
