def dashboard_files():
    return {}
