import latentloom_test_absent_dependency as absent


class Absent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    def run(self, image):
        return (absent.process(image),)


NODE_CLASS_MAPPINGS = {"Absent": Absent}
