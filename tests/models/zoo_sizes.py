"""Input sizes the registry-wide tests use: small where the network allows, larger where it must."""
import hwnas.models as zoo

# Their classifiers need 6x6 / 7x7 maps; below 224 the adaptive pool must upsample, which the TorchScript
# ONNX exporter cannot express. Exported and pruned at 224, as slow tests (hundreds of MB of FC weights).
HEAVY = {"vgg16": 224, "alexnet": 224, "zfnet": 224}
# Unpadded 3x3 stems run out of pixels below 75x75.
MIN_SIZE = {"inception_v3": 75, "inception_v4": 75, "inception_resnet_v2": 75}


def small_size(name):
    """A small input the network accepts (keeps the tests fast); the paper size if that is smaller."""
    return HEAVY.get(name) or max(min(64, zoo.get_info(name).input_size), MIN_SIZE.get(name, 0))


def is_detector(name):
    return "detector" in zoo.get_info(name).tags
