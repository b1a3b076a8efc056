"""Stage CIFAR-100 classes into a store in SageMaker's image-classification layout."""
