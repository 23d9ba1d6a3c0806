# The stand-in for templates/aws/standby/main.tf in warm_cloud.sh: the
# warm standby bucket as a terraform_data resource whose local-exec
# provisioners create it on the test's s3rver (TF_RH_TEST_S3 in terraform's
# environment, which rehydra passes on: TF_* variables) and, at destroy,
# delete its objects and then the bucket, as force_destroy does on S3.
# Test data only: never rendered for a user.

variable "name" {
  type = string
}

variable "labels" {
  type = map(string)
}

variable "region" {
  type = string
}

resource "terraform_data" "standby" {
  input = { name = var.name, region = var.region }

  provisioner "local-exec" {
    command = <<-SH
      set -e
      curl -sSf --aws-sigv4 'aws:amz:${self.input.region}:s3' -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
        -X PUT "$TF_RH_TEST_S3/${self.input.name}" >/dev/null
    SH
  }

  provisioner "local-exec" {
    when    = destroy
    command = <<-SH
      set -e
      s3() { curl -sSf --aws-sigv4 'aws:amz:${self.input.region}:s3' -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' "$@"; }
      b="$TF_RH_TEST_S3/${self.input.name}"
      for k in $(s3 "$b?list-type=2&max-keys=1000" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'); do
        s3 -X DELETE "$b/$k" >/dev/null
      done
      s3 -X DELETE "$b" >/dev/null
    SH
  }
}

output "bucket" {
  value = terraform_data.standby.input.name
}
