-- wrk script of scripts/load.sh: the Authorization field every request carries.
--   KEYS_FILE  valid keys, one per line (written by the load_server example)
--   AUTH       valid (default): the first key; unknown: a well-formed key no store holds, so
--              the server parses, hashes and looks it up before its 401; none: no field
--   ROTATE     1: cycle through every key of KEYS_FILE, one per request (this calls Lua for
--              each request, which makes wrk slower; the default sends one prebuilt request)
local auth = os.getenv("AUTH") or "valid"

if auth == "unknown" then
  wrk.headers["Authorization"] = "Bearer sq_live_" .. string.rep("0", 64)
elseif auth == "valid" then
  local path = os.getenv("KEYS_FILE")
  assert(path, "KEYS_FILE is not set")
  local keys = {}
  for line in io.lines(path) do
    if #line > 0 then
      keys[#keys + 1] = "Bearer " .. line
    end
  end
  assert(#keys > 0, "no keys in " .. path)
  if os.getenv("ROTATE") == "1" then
    local i = 0
    request = function()
      i = i % #keys + 1
      return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
    end
  else
    wrk.headers["Authorization"] = keys[1]
  end
elseif auth ~= "none" then
  error("AUTH must be valid, unknown or none, not " .. auth)
end
