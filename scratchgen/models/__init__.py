"""The models of the lecture, each in its own short file, composed from :mod:`scratchgen.nn` layers."""

from scratchgen.models.classifier import ConvClassifier, MLPClassifier  # noqa: F401
from scratchgen.models.autoencoder import (  # noqa: F401
    Autoencoder, ConvAutoencoder, DeepAutoencoder, DenoisingAutoencoder, DenseAutoencoder, corrupt,
    reconstruction_loss,
)
from scratchgen.models.baselines import PCA, linear_probe_accuracy, reconstruction_errors  # noqa: F401
from scratchgen.models.made import GaussianMixtureMADE, MADE  # noqa: F401
from scratchgen.models.fvsbn import FVSBN, IndependentBernoulli, bits_per_dim  # noqa: F401
from scratchgen.models.vae import VAE, ConvVAE, DenseVAE, VAELoss, importance_sampled_nll  # noqa: F401
from scratchgen.models.pixelcnn import PixelCNN  # noqa: F401
from scratchgen.models.diffusion import DenoisingMLP, Diffusion  # noqa: F401
from scratchgen.models.rbm import RBM, AISEstimate, ContrastiveDivergence, ais_log_partition, ais_schedule  # noqa: F401
from scratchgen.models.flow import MAF, AffineCoupling, Bijection, Flow, MAFLayer, RealNVP  # noqa: F401
from scratchgen.models.kmeans import KMeans  # noqa: F401
from scratchgen.models.gsn import chain_step, random_binary_images, run_chain, walkback_loss  # noqa: F401
from scratchgen.models.gan import (  # noqa: F401
    DCGANDiscriminator, DCGANGenerator, GANTrainer, JointGenerator, MLPDiscriminator, MLPGenerator,
)
from scratchgen.models.unet import ResidualBlock, UNet  # noqa: F401
