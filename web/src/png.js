/**
 * PNG text chunks: where SaveImage keeps the workflow that made an image (`prompt` holds the API-format
 * workflow as JSON). Reads `tEXt` (Latin-1), `zTXt` and `iTXt` (UTF-8, optionally zlib-compressed) without
 * decoding the image.
 */

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** All text chunks of a PNG as `{keyword: text}`; throws if the bytes are not a PNG. */
export async function readPngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (!SIGNATURE.every((b, i) => bytes[i] === b)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "tEXt") {
      const [key, rest] = splitNul(data);
      texts[latin1(key)] = latin1(rest);
    } else if (type === "zTXt") {
      const [key, rest] = splitNul(data);
      texts[latin1(key)] = latin1(await inflate(rest.subarray(1)));
    } else if (type === "iTXt") {
      const [key, rest] = splitNul(data);
      const compressed = rest[0] === 1;
      const [, afterLanguage] = splitNul(rest.subarray(2));
      const [, text] = splitNul(afterLanguage);
      texts[latin1(key)] = new TextDecoder().decode(compressed ? await inflate(text) : text);
    } else if (type === "IEND") {
      break;
    }
    offset += 12 + length;
  }
  return texts;
}

function splitNul(data) {
  const at = data.indexOf(0);
  return at < 0 ? [data, new Uint8Array()] : [data.subarray(0, at), data.subarray(at + 1)];
}

function latin1(data) {
  return new TextDecoder("latin1").decode(data);
}

async function inflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
