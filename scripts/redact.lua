-- Response redaction: masks personal fields in JSON answers before they leave the gateway.
-- `buffer_body = true` hands the whole body (up to the script's `max_body`, default 1MiB) to
-- on_response; an answer that is not JSON passes unchanged.

buffer_body = true

local SECRET = { email = true, phone = true, ssn = true }

local function redact(value, depth)
  if type(value) ~= "table" or depth > 16 then
    return
  end
  for k, v in value do
    if SECRET[k] and type(v) == "string" then
      value[k] = "***"
    else
      redact(v, depth + 1)
    end
  end
end

function on_response(resp, ctx)
  local ctype = resp:header("content-type") or ""
  if resp.body == nil or not string.find(ctype, "json", 1, true) then
    return
  end
  local ok, doc = pcall(json.decode, resp.body)
  if not ok then
    return
  end
  redact(doc, 0)
  resp.body = json.encode(doc)
  resp:set_header("x-redacted", "1")
end
