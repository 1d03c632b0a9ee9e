"""The red packet API: request/response models, the err_code table, Client and AsyncClient."""
