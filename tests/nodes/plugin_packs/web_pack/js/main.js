import { app } from "../../scripts/app.js";

app.registerExtension({ name: "web_pack.main" });
