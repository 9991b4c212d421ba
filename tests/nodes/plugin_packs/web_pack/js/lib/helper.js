export const helper = () => "web_pack";
