// The example plugin's web extension. The editor fetches GET /extensions, imports each URL listed there and,
// when the module's default export has a setup(app) function, calls it once the editor is ready.
export default {
  name: "example_plugin",
  setup(app) {
    console.info("example_plugin extension loaded");
  },
};
