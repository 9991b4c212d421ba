// A web extension of the test pack: the editor imports it (GET /extensions lists its URL).
export default { name: "v1test.brightness" };
