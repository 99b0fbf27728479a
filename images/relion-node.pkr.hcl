# A cryocloud node image for one RELION version: `packer build -var relion_version=5.0.0 images/relion-node.pkr.hcl`
# (docs/node-image.md). NOT run against AWS from this repository's CI.
packer {
  required_plugins {
    amazon = { version = ">= 1.3.0", source = "github.com/hashicorp/amazon" }
  }
}

variable "relion_version" { type = string }
variable "region" {
  type    = string
  default = "us-east-1"
}
variable "cryocloud_deps" {
  type    = string
  default = "boto3>=1.34 obstore>=0.12 click>=8.1 rich>=13 gemmi>=0.6"
}

source "amazon-ebs" "node" {
  region        = var.region
  instance_type = "g5.xlarge"
  ssh_username  = "ubuntu"
  ami_name      = "cryocloud-relion-${var.relion_version}-{{timestamp}}"
  source_ami_filter {
    filters = { name = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*", virtualization-type = "hvm" }
    owners      = ["amazon"]
    most_recent = true
  }
  encrypt_boot = true
  tags = { "cryocloud:owner" = "lab", "cryocloud:project" = "node-image", "cryocloud:job" = "-",
           "cryocloud:expires" = "never", "relion" = var.relion_version }
}

build {
  sources = ["source.amazon-ebs.node"]
  provisioner "shell" {
    script           = "images/provision-node.sh"
    environment_vars = ["RELION_VERSION=${var.relion_version}", "CRYOCLOUD_DEPS=${var.cryocloud_deps}"]
    execute_command  = "sudo -E bash '{{ .Path }}'"
  }
}
