-- Shared by every script. KEYS[1] is the key prefix ("{namespace}:"), declared as the
-- script's key so that Redis Cluster routes the script to the node owning the prefix's
-- slot: the braces make it a hash tag, so all of a deployment's keys live in that slot.
local p = KEYS[1]

-- A room document and its participants in join order, or nil.
local function room_entry(id)
  local doc = redis.call('GET', p .. 'room:' .. id)
  if not doc then return nil end
  return {doc, redis.call('LRANGE', p .. 'room:' .. id .. ':participants', 0, -1)}
end

-- Publishes a change's event in the same atomic step as the change: no change without
-- its event, no event without its change, whatever happens to the caller. The event is
-- appended to the namespace's log too (a stream of at most LOG_MAX entries and LOG_AGE_MS
-- milliseconds, both set by the store; each entry with the id before it) and published
-- framed as '<id> <prev>\n<body>' (events::frame): a replica that did not deliver `prev`
-- knows it missed something, and reads the log. An addressed event
-- (AUTH=token) comes as '#<users>|<max>|<ttl>\n<event>' (events::envelope): it is appended
-- to each user's history (a stream trimmed to max entries and to its last ttl seconds,
-- expiring ttl seconds after its last event) and published with "to": {user: offset};
-- '@' stands for `participants`.
local function publish(body)
  local log, last = p .. 'log', p .. 'log:last'
  -- The previous id is kept beside the stream: reading the stream's last entry costs more.
  local prev = redis.call('GET', last) or '0-0'
  local id = redis.call('XADD', log, 'MAXLEN', '~', LOG_MAX, '*', 'e', body, 'p', prev)
  redis.call('SET', last, id)
  local ms = tonumber(id:match('^(%d+)'))
  redis.call('XTRIM', log, 'MINID', '~', tostring(ms - LOG_AGE_MS))
  redis.call('PUBLISH', p .. 'events', id .. ' ' .. prev .. '\n' .. body)
end

local function emit(message, participants)
  if message:byte(1) ~= 35 then
    publish(message)
    return
  end
  local users, max, ttl, body = message:match('^#([^|]*)|(%d+)|(%d+)\n(.*)$')
  local list = participants or {}
  if users ~= '@' then
    list = {}
    for user in users:gmatch('[^,]+') do list[#list + 1] = user end
  end
  local to = {}
  for i, user in ipairs(list) do
    local key = p .. 'history:' .. user
    local offset = redis.call('XADD', key, 'MAXLEN', max, '*', 'e', body)
    -- Entries older than ttl go too: an active user's stream would otherwise keep them.
    local ms = tonumber(offset:match('^(%d+)'))
    redis.call('XTRIM', key, 'MINID', tostring(ms - tonumber(ttl) * 1000))
    redis.call('EXPIRE', key, ttl)
    to[i] = '"' .. user .. '":"' .. offset .. '"'
  end
  publish('{"to":{' .. table.concat(to, ',') .. '},' .. body:sub(2))
end
